/*
 * spec_data: embeds api/openapi.yaml and build/gen/openapi.json as
 * NUL-terminated read-only byte arrays with their lengths.
 */
	.section .rodata
	.global hm_spec_yaml
	.global hm_spec_yaml_len
	.global hm_spec_json
	.global hm_spec_json_len
hm_spec_yaml:
	.incbin "api/openapi.yaml"
hm_spec_yaml_end:
	.byte 0
hm_spec_json:
	.incbin "openapi.json"
hm_spec_json_end:
	.byte 0
	.balign 8
hm_spec_yaml_len:
	.quad hm_spec_yaml_end - hm_spec_yaml
hm_spec_json_len:
	.quad hm_spec_json_end - hm_spec_json
	.section .note.GNU-stack,"",@progbits
