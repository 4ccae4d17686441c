/*
 * Ingress endpoints: POST/GET /ingresses, GET/DELETE /ingresses/{id} ({id}
 * is an id, a name or a unique id prefix). The work is the ingress
 * service's (ingress/ingress.h).
 */
#include <jansson.h>

#include "api/api.h"
#include "api/handlers.h"
#include "api/request.h"
#include "api/validate.h"
#include "core/err.h"
#include "ingress/ingress.h"

int hm_h_ingresses_create(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	json_t *o = NULL;
	if (hm_ingresses_create(hm_req_services(req)->ingresses, hm_req_json(req), &o, err) < 0)
		return -1;
	return hm_resp_json(resp, 201, o);
}

int hm_h_ingresses_list(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	json_t *filter = hm_query_deep_object(req, "tags");
	json_t *list = NULL;
	int r = hm_ingresses_list(hm_req_services(req)->ingresses, filter, &list, err);
	json_decref(filter);
	if (r < 0)
		return -1;
	return hm_resp_json(resp, 200, list);
}

int hm_h_ingresses_get(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	json_t *o = NULL;
	if (hm_ingresses_get(hm_req_services(req)->ingresses, hm_req_param(req, "id"), &o, err) < 0)
		return -1;
	return hm_resp_json(resp, 200, o);
}

int hm_h_ingresses_delete(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	if (hm_ingresses_delete(hm_req_services(req)->ingresses, hm_req_param(req, "id"), err) < 0)
		return -1;
	resp->status = 204;
	return 0;
}
