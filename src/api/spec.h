/*
 * The OpenAPI document, embedded into the binary by api/spec_data.S from
 * api/openapi.yaml and its JSON rendering (generated at build time).
 */
#pragma once

#include <stdint.h>

extern const char hm_spec_yaml[];
extern const uint64_t hm_spec_yaml_len;
extern const char hm_spec_json[];
extern const uint64_t hm_spec_json_len;
