
/*
 * Copyright (C) AILink
 *
 * Gemini streamGenerateContent?alt=sse -> OpenAI chunks; see fuzz_stream.h.
 */


#include "fuzz_stream.h"


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_stream_run(ngx_ailink_gemini_stream, data, size);
}
