"""Canned provider responses, request bodies and stream profiles for bench/run.

Everything the mock upstream serves and the clients send is built here, so
the gateway and the baseline see byte-identical traffic.
"""

import hashlib
import json
import os

MODELS = {
    "openai": "gpt-4o-mini",
    "anthropic": "claude-3-5-haiku-20241022",
    "gemini": "gemini-2.0-flash",
}

# the upstream keys both proxies inject (the gateway from its credentials,
# the baseline from proxy_set_header)
KEYS = {
    "BENCH_OPENAI_KEY": "sk-bench-openai-0001",
    "BENCH_ANTHROPIC_KEY": "sk-ant-bench-0001",
    "BENCH_GEMINI_KEY": "gm-bench-0001",
    "BENCH_ACTION_KEY": "sk-bench-action-0001",
}

TOKENS = {
    "llm": "ailink_v1_proj_bench_tok_llm000000000000000000000001",
    "action": "ailink_v1_proj_bench_tok_action0000000000000000000001",
    "policy": "ailink_v1_proj_benchpol_tok_policy00000000000000000001",
    # issue 12: a token whose requests all get pii_redaction
    "guard": "ailink_v1_proj_benchgrd_tok_guard000000000000000000001",
    # issue 16: scenario 12's token, one rate limit and one spend cap
    "limits": "ailink_v1_proj_benchlim_tok_limits00000000000000000001",
}


def policies_yaml(n=20, rules=5):
    """Scenario 5: n policies of `rules` rules on the policy token, the way
    an operator writes them (model, agent, method/path, glob, project and
    header conditions, none of which this traffic matches), the last rule
    of the last policy one rate limit and one spend cap that never bind."""
    out = ["policies:"]
    for i in range(n):
        out.append("  - name: bench-%02d" % i)
        out.append("    apply_to: {tokens: [tok_bench_policy]}")
        out.append("    rules:")
        kinds = [
            "{field: model, op: eq, value: gpt-blocked-%d}" % i,
            "{field: agent.name, op: in, value: [bad-agent-%d, evil-%d]}" % (i, i),
            "{all: [{field: request.method, op: eq, value: DELETE}, "
            "{field: request.path, op: starts_with, value: /v1/admin}]}",
            "{field: model, op: glob, value: \"o1-*-%d\"}" % i
            if i % 4 else "{field: request.headers.x-bench-debug, op: exists}",
            "{not: {field: project, op: eq, value: benchpol}}",
        ]
        for r in range(rules):
            if i == n - 1 and r == rules - 1:
                # every request: the limits are looked up and counted
                out.append("      - name: limits")
                out.append("        then: [{rate_limit: {requests_per_minute: 1000000000,"
                           " tokens_per_minute: 1000000000000}},"
                           " {spend_cap: {limit_usd: 1000000000}}]")
            else:
                out.append("      - when: %s" % kinds[r % len(kinds)])
                out.append("        then: {deny: {reason: \"bench rule %d.%d\"}}" % (i, r))
    return "\n".join(out) + "\n"

def limits_token_yaml():
    """Scenario 12's token (in the gateways of scenario 12 only)"""
    return "\n".join([
        "  - id: tok_bench_limits",
        "    name: bench token with one rate limit and one spend cap",
        "    project: benchlim",
        "    hash: %s" % sha256(TOKENS["limits"]),
        "    agent_name: bench",
        "    credentials:",
        "      openai: openai"])


def limits_policy_yaml():
    """Scenario 12's policy, appended to policies_yaml(): one rate limit and
    one spend cap on every request of its token, far too high to bind (the
    counters live in shared memory or in Redis, as the gateway says)"""
    return "\n".join([
        "  - name: bench-limits",
        "    apply_to: {tokens: [tok_bench_limits]}",
        "    rules:",
        "      - name: limits",
        "        then: [{rate_limit: {requests_per_minute: 1000000000,"
        " tokens_per_minute: 1000000000000}}, {spend_cap: {limit_usd: 1000000000}}]"])


REPLY = ("Here is a short answer with enough text to look like a real "
         "completion: the gateway reads usage from it, the audit record "
         "carries the tokens and the cost, and the client gets it unchanged.")

OPENAI_JSON = {
    "id": "chatcmpl-bench0001", "object": "chat.completion",
    "created": 1700000000, "model": "gpt-4o-mini-2024-07-18",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": REPLY,
                                         "refusal": None},
                 "logprobs": None, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 250, "completion_tokens": 48, "total_tokens": 298,
              "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
              "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                            "accepted_prediction_tokens": 0,
                                            "rejected_prediction_tokens": 0}},
    "service_tier": "default", "system_fingerprint": "fp_bench",
}

ANTHROPIC_JSON = {
    "id": "msg_bench0001", "type": "message", "role": "assistant",
    "model": "claude-3-5-haiku-20241022",
    "content": [{"type": "text", "text": REPLY}],
    "stop_reason": "end_turn", "stop_sequence": None,
    "usage": {"input_tokens": 250, "output_tokens": 48,
              "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0},
}

GEMINI_JSON = {
    "candidates": [{"content": {"parts": [{"text": REPLY}], "role": "model"},
                    "finishReason": "STOP", "avgLogprobs": -0.12}],
    "usageMetadata": {"promptTokenCount": 250, "candidatesTokenCount": 48,
                      "totalTokenCount": 298,
                      "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 250}],
                      "candidatesTokensDetails": [{"modality": "TEXT", "tokenCount": 48}]},
    "modelVersion": "gemini-2.0-flash", "responseId": "bench0001",
}

ACTION_JSON = {
    "object": "list", "url": "/v1/customers", "has_more": False,
    "data": [{"id": "cus_bench%04d" % i, "object": "customer",
              "email": "customer%d@example.com" % i, "name": "Customer %d" % i,
              "created": 1700000000 + i, "livemode": False}
             for i in range(3)],
}


def compact(obj):
    return json.dumps(obj, separators=(",", ":"))


def sha256(s):
    return hashlib.sha256(s.encode()).hexdigest()


# ---------------------------------------------------------------- bodies

_WORDS = ("the gateway forwards every request to the provider and records "
          "what it cost; agents never see a real key, only a virtual token "
          "bound to a project").split()


def _text(n, seed):
    """about n characters of prose, with a newline and a quote in it"""
    out, i = [], seed
    while sum(len(w) + 1 for w in out) < n:
        out.append(_WORDS[i % len(_WORDS)])
        i += 7
    s = " ".join(out)
    mid = len(s) // 2
    return (s[:mid] + '\n"' + s[mid:] + '"')[:n]


def chat_body(model, size, stream=False):
    """an OpenAI chat.completions request of about `size` bytes"""
    msgs = [{"role": "system", "content": "You are a careful assistant. " + _text(120, 1)}]
    body = {"model": model, "messages": msgs, "max_tokens": 256, "temperature": 0.2}
    if stream:
        body["stream"] = True
    turn = 0
    while len(compact(body)) < size:
        role = "user" if turn % 2 == 0 else "assistant"
        room = size - len(compact(body)) - 40
        msgs.append({"role": role, "content": _text(max(20, min(1000, room)), turn + 3)})
        turn += 1
    if msgs[-1]["role"] != "user":
        msgs.append({"role": "user", "content": "Go on."})
    return compact(body)


# ---------------------------------------------------------------- streams
#
# A stream profile: `events` content events, `batch` events per write, a
# `delay` (seconds) between writes.  Every content event carries the
# upstream's send time ("t=<$msec>") in its text, so the client can tell
# how long each event took to arrive, translated or not.

def stream_profiles(quick):
    lat_events = 20 if quick else 60
    return {
        # latency and memory as concurrency grows (10, 100, 1000 streams)
        "lat": {"events": lat_events, "batch": 1, "delay": 0.05},
        # memory as streams grow longer: the same writes (25 events every
        # 20 ms), 4 of them or 200
        "len100": {"events": 100, "batch": 25, "delay": 0.02},
        "len5000": {"events": 5000, "batch": 25, "delay": 0.02},
    }


def _anthropic_event(kind, data):
    return "event: %s\ndata: %s\n\n" % (kind, compact(data))


def anthropic_stream_parts(prof):
    """(head, content event, tail) of an Anthropic Messages stream"""
    head = _anthropic_event("message_start", {
        "type": "message_start",
        "message": {"id": "msg_bench0001", "type": "message", "role": "assistant",
                    "model": "claude-3-5-haiku-20241022", "content": [],
                    "stop_reason": None, "stop_sequence": None,
                    "usage": {"input_tokens": 25, "output_tokens": 1}}})
    head += _anthropic_event("content_block_start", {
        "type": "content_block_start", "index": 0,
        "content_block": {"type": "text", "text": ""}})
    head += _anthropic_event("ping", {"type": "ping"})
    delta = _anthropic_event("content_block_delta", {
        "type": "content_block_delta", "index": 0,
        "delta": {"type": "text_delta", "text": "t=@MSEC@ some streamed words "}})
    tail = _anthropic_event("content_block_stop", {"type": "content_block_stop", "index": 0})
    tail += _anthropic_event("message_delta", {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {"output_tokens": prof["events"] * 4}})
    tail += _anthropic_event("message_stop", {"type": "message_stop"})
    return head, delta, tail


def openai_stream_parts(prof):
    """(head, content chunk, tail) of an OpenAI chat.completion.chunk stream"""
    base = {"id": "chatcmpl-bench0001", "object": "chat.completion.chunk",
            "created": 1700000000, "model": "gpt-4o-mini-2024-07-18",
            "system_fingerprint": "fp_bench"}

    def chunk(delta, finish=None, usage=False):
        c = dict(base)
        c["choices"] = [{"index": 0, "delta": delta, "logprobs": None,
                         "finish_reason": finish}]
        if usage:
            c["usage"] = None
        return "data: %s\n\n" % compact(c)

    head = chunk({"role": "assistant", "content": "", "refusal": None})
    delta = chunk({"content": "t=@MSEC@ some streamed words "})
    tail = chunk({}, "stop")
    u = dict(base)
    u["choices"] = []
    u["usage"] = {"prompt_tokens": 25, "completion_tokens": prof["events"] * 4,
                  "total_tokens": 25 + prof["events"] * 4}
    tail += "data: %s\n\n" % compact(u)
    tail += "data: [DONE]\n\n"
    return head, delta, tail


def _nginx_quote(s):
    """a single-quoted nginx string (the config parser turns \\n back)"""
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") + "'"


def stream_location(path, prof, parts):
    """an echo-module location that writes the stream with delays"""
    head, delta, tail = parts
    delta = delta.replace("@MSEC@", "$msec")
    lines = ["location = %s {" % path,
             "    default_type text/event-stream;",
             "    add_header Cache-Control no-cache;",
             "    echo -n %s;" % _nginx_quote(head),
             "    echo_flush;"]
    left = prof["events"]
    while left > 0:
        n = min(prof["batch"], left)
        left -= n
        lines.append("    echo_sleep %.3f;" % prof["delay"])
        # one nginx parameter holds at most 4 KB: several echoes per write
        per = max(1, 3000 // len(delta))
        for i in range(0, n, per):
            lines.append("    echo -n %s;" % _nginx_quote(delta * min(per, n - i)))
        lines.append("    echo_flush;")
    lines.append("    echo -n %s;" % _nginx_quote(tail))
    lines.append("}")
    return "\n".join(lines) + "\n"


def write_all(work, quick):
    """bodies/*.json, mock-responses.conf and mock-streams.conf under work"""
    os.makedirs(os.path.join(work, "bodies"), exist_ok=True)

    def put(name, text):
        with open(os.path.join(work, name), "w") as f:
            f.write(text)

    for prov in ("openai", "anthropic", "gemini"):
        for size, tag in ((1024, "1k"), (100 * 1024, "100k")):
            put("bodies/%s-%s.json" % (prov, tag), chat_body(MODELS[prov], size))

    # issue 17: a coding agent's long history, 1 MB, to translate
    for prov in ("anthropic", "gemini"):
        put("bodies/%s-1m.json" % prov, chat_body(MODELS[prov], 1024 * 1024))

    # issue 11: the 1 KB OpenAI chat for models with fallbacks (scenario 10)
    put("bodies/openai-fb-ok-1k.json", chat_body("gpt-fb-ok", 1024))
    put("bodies/openai-fb-down-1k.json", chat_body("gpt-fb-down", 1024))

    # issue 15: the same 1 KB chat with reasoning_effort (thinking budget,
    # checks of temperature, top_p and tool_choice); thinking takes no
    # temperature, and its budget needs more than max_tokens 256: neither
    reasoning = json.loads(chat_body(MODELS["anthropic"], 1024))
    del reasoning["temperature"], reasoning["max_tokens"]
    reasoning["reasoning_effort"] = "medium"
    put("bodies/anthropic-reasoning-1k.json", compact(reasoning))

    profiles = stream_profiles(quick)
    streams = []
    for name, prof in profiles.items():
        put("bodies/stream-anthropic-%s.json" % name,
            chat_body("claude-bench-%s" % name, 200, stream=True))
        streams.append(stream_location("/sse/%s/v1/messages" % name, prof,
                                       anthropic_stream_parts(prof)))
        put("bodies/stream-openai-%s.json" % name,
            chat_body("gpt-bench-%s" % name, 200, stream=True))
        streams.append(stream_location("/osse/%s/v1/chat/completions" % name, prof,
                                       openai_stream_parts(prof)))
    put("mock-streams.conf", "".join(streams))

    responses = {
        "OPENAI_JSON": compact(OPENAI_JSON),
        "ANTHROPIC_JSON": compact(ANTHROPIC_JSON),
        "GEMINI_JSON": compact(GEMINI_JSON),
        "ACTION_JSON": compact(ACTION_JSON),
    }
    return profiles, responses
