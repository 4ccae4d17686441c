/*
 * yaml2json: a build-time tool that renders a YAML document (our OpenAPI
 * spec) as JSON, so the spec is written once and served in both forms.
 * Plain scalars follow the YAML 1.2 core schema (null, booleans, numbers);
 * quoted and block scalars stay strings. Anchors and aliases are refused:
 * the spec does not use them, and refusing keeps the tool small.
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

static json_t *parse_node(yaml_parser_t *p, yaml_event_t *ev);

static void die(const char *msg, const yaml_parser_t *p)
{
	if (p && p->problem)
		fprintf(stderr, "yaml2json: %s: %s at line %zu\n", msg, p->problem,
		        p->problem_mark.line + 1);
	else
		fprintf(stderr, "yaml2json: %s\n", msg);
	exit(1);
}

static void next(yaml_parser_t *p, yaml_event_t *ev)
{
	if (!yaml_parser_parse(p, ev))
		die("parse error", p);
}

static json_t *scalar(const yaml_event_t *ev)
{
	const char *v = (const char *)ev->data.scalar.value;
	if (ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return json_string(v);
	if (!*v || !strcmp(v, "null") || !strcmp(v, "~") || !strcmp(v, "Null") ||
	    !strcmp(v, "NULL"))
		return json_null();
	if (!strcmp(v, "true") || !strcmp(v, "True") || !strcmp(v, "TRUE"))
		return json_true();
	if (!strcmp(v, "false") || !strcmp(v, "False") || !strcmp(v, "FALSE"))
		return json_false();
	char *end;
	errno = 0;
	long long i = strtoll(v, &end, 10);
	if (!*end && !errno && (v[0] == '-' || (v[0] >= '0' && v[0] <= '9')))
		return json_integer(i);
	double d = strtod(v, &end);
	if (!*end && !errno && (v[0] == '-' || v[0] == '.' || (v[0] >= '0' && v[0] <= '9')))
		return json_real(d);
	return json_string(v);
}

static json_t *parse_node(yaml_parser_t *p, yaml_event_t *ev)
{
	json_t *out = NULL;
	switch (ev->type) {
	case YAML_SCALAR_EVENT:
		out = scalar(ev);
		break;
	case YAML_SEQUENCE_START_EVENT:
		out = json_array();
		for (;;) {
			yaml_event_t item;
			next(p, &item);
			if (item.type == YAML_SEQUENCE_END_EVENT) {
				yaml_event_delete(&item);
				break;
			}
			json_array_append_new(out, parse_node(p, &item));
		}
		break;
	case YAML_MAPPING_START_EVENT:
		out = json_object();
		for (;;) {
			yaml_event_t key;
			next(p, &key);
			if (key.type == YAML_MAPPING_END_EVENT) {
				yaml_event_delete(&key);
				break;
			}
			if (key.type != YAML_SCALAR_EVENT)
				die("mapping keys must be scalars", NULL);
			char *k = strdup((const char *)key.data.scalar.value);
			yaml_event_delete(&key);
			if (json_object_get(out, k)) {
				fprintf(stderr, "yaml2json: duplicate key `%s`\n", k);
				exit(1);
			}
			yaml_event_t val;
			next(p, &val);
			json_object_set_new(out, k, parse_node(p, &val));
			free(k);
		}
		break;
	case YAML_ALIAS_EVENT:
		die("aliases are not supported", NULL);
		break;
	default:
		die("unexpected YAML event", NULL);
	}
	yaml_event_delete(ev);
	return out;
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: yaml2json IN.yaml OUT.json\n");
		return 2;
	}
	FILE *in = fopen(argv[1], "rb");
	if (!in) {
		perror(argv[1]);
		return 1;
	}
	yaml_parser_t p;
	yaml_parser_initialize(&p);
	yaml_parser_set_input_file(&p, in);
	yaml_event_t ev;
	for (;;) {
		next(&p, &ev);
		if (ev.type != YAML_STREAM_START_EVENT && ev.type != YAML_DOCUMENT_START_EVENT)
			break;
		yaml_event_delete(&ev);
	}
	json_t *root = parse_node(&p, &ev);
	yaml_parser_delete(&p);
	fclose(in);
	if (json_dump_file(root, argv[2], JSON_INDENT(2) | JSON_PRESERVE_ORDER) != 0) {
		fprintf(stderr, "yaml2json: cannot write %s\n", argv[2]);
		return 1;
	}
	json_decref(root);
	return 0;
}
