/* The product version, shared by the daemon, the CLI and the spec's info.version. */
#pragma once

#define HM_VERSION "0.1.0"
