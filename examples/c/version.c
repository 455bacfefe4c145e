/* The smallest client of libvllm: prints the library version and checks it against the header.
 * Built by `make test` with -std=c11 -Wall -Wextra -Werror -pedantic. */
#include <stdio.h>
#include <string.h>

#include "vllm.h"

int main(void) {
  const char *v = vllm_version();
  printf("libvllm %s (header %s)\n", v, VLLM_VERSION_STRING);
  if (strcmp(v, VLLM_VERSION_STRING) != 0) {
    fprintf(stderr, "library and header versions differ\n");
    return 1;
  }
  if (vllm_version_number() != VLLM_VERSION_MAJOR * 10000 + VLLM_VERSION_MINOR * 100 + VLLM_VERSION_PATCH) {
    fprintf(stderr, "vllm_version_number disagrees with the header\n");
    return 1;
  }
  if (strcmp(vllm_status_str(VLLM_STATUS_INVALID_ARGUMENT), "invalid argument") != 0 ||
      strcmp(vllm_status_str(12345), "unknown status") != 0) {
    fprintf(stderr, "vllm_status_str gave an unexpected name\n");
    return 1;
  }
  printf("status %d: %s\n", VLLM_STATUS_OK, vllm_status_str(VLLM_STATUS_OK));
  return 0;
}
