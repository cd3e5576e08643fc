
/*
 * Copyright (C) AILink
 *
 * Anthropic Messages SSE -> OpenAI chunks; see fuzz_stream.h.
 */


#include "fuzz_stream.h"


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_stream_run(ngx_ailink_anthropic_stream, data, size);
}
