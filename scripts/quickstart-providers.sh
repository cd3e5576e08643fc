# Sourced by ./quickstart.sh (and t/131-quickstart-providers.t) with the
# mock provider's port as $1: each of OpenAI, Anthropic and Gemini whose
# key is not in the environment (OPENAI_API_KEY, ANTHROPIC_API_KEY,
# GEMINI_API_KEY) is pointed at the project's mock provider, which speaks
# all three formats, with a placeholder key; conf-examples/quickstart.yaml
# reads the variables.  Sets quickstart_mocked and quickstart_served to the
# providers' names.

quickstart_mock_port=$1
quickstart_mocked=
quickstart_served=

if [ -z "${OPENAI_API_KEY:-}" ]; then
    quickstart_mocked="$quickstart_mocked OpenAI"
    export OPENAI_API_KEY=mock-key-not-a-secret
    export OPENAI_BASE_URL=http://127.0.0.1:$quickstart_mock_port/v1
else
    quickstart_served="$quickstart_served OpenAI"
fi

if [ -z "${ANTHROPIC_API_KEY:-}" ]; then
    quickstart_mocked="$quickstart_mocked Anthropic"
    export ANTHROPIC_API_KEY=mock-key-not-a-secret
    export ANTHROPIC_BASE_URL=http://127.0.0.1:$quickstart_mock_port/v1
else
    quickstart_served="$quickstart_served Anthropic"
fi

if [ -z "${GEMINI_API_KEY:-}" ]; then
    quickstart_mocked="$quickstart_mocked Gemini"
    export GEMINI_API_KEY=mock-key-not-a-secret
    export GEMINI_BASE_URL=http://127.0.0.1:$quickstart_mock_port/v1beta
else
    quickstart_served="$quickstart_served Gemini"
fi
