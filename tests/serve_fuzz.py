"""Property-based fuzzing of a served OpenAPI document with schemathesis (used by tests/test_serve.py).

Schemathesis generates requests from each operation of the document the server serves, in both
modes: positive (valid by the schema: must not be refused) and negative (invalid: must get a
4xx). Every response goes through all of schemathesis's checks: no 5xx, status, content type,
headers and body as documented, valid data accepted, invalid data refused, auth not ignored.

Schemathesis's pytest plugin loads the schema at collection time, when no server runs yet, or
lazily through ``request.node._nodeid``, which pytest 9 no longer has; so the requests come from
the operations' Hypothesis strategies (schemathesis's Python API) and are counted here.
"""
from __future__ import annotations

from collections import Counter

# The 400s whose rule JSON Schema cannot state (openapi.py): a valid-looking request may get them.
UNSTATABLE = {("invalid_conversation", "messages"),  # the last non-system message must be the user's
              ("too_long", "messages"),  # the conversation's total length
              ("no_reranker", "model")}  # /v1/rerank on a deployment without a reranker


def _accepts_valid_data(ctx, response, case):
    """schemathesis's positive_data_acceptance, less the documented 400s of UNSTATABLE."""
    from schemathesis.checks import positive_data_acceptance

    if response.status_code == 400:
        error = response.json()["error"]
        if (error["code"], error["param"]) in UNSTATABLE:
            return None
    return positive_data_acceptance(ctx, response, case)


def fuzz(url: str, examples: int, headers: dict | None = None) -> tuple[Counter, list[str]]:
    """Up to ``examples`` requests per operation and mode (negative only where there is a body to
    break), derandomized so CI repeats the same cases. Returns the (operation, mode, status)
    counts and one report per distinct failure (with a curl line to replay it)."""
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, settings
    from schemathesis import GenerationMode
    from schemathesis.checks import positive_data_acceptance
    from schemathesis.core.failures import FailureGroup

    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    seen: Counter = Counter()
    failures: dict[str, str] = {}
    for result in schema.get_all_operations():
        op = result.ok()
        modes = [GenerationMode.POSITIVE] + ([GenerationMode.NEGATIVE] if op.body else [])
        for mode in modes:
            # generate only: a failure is recorded below, not shrunk, so every case is counted
            @settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                      phases=[Phase.generate], suppress_health_check=list(HealthCheck))
            @given(case=op.as_strategy(generation_mode=mode))
            def run(case):
                response = case.call(headers=headers, timeout=60)
                seen[(op.label, mode.value, response.status_code)] += 1
                try:
                    case.validate_response(response, headers=headers, excluded_checks=[positive_data_acceptance],
                                           additional_checks=[_accepts_valid_data])
                except FailureGroup as e:
                    failures.setdefault(f"{op.label} {mode.value}: {sorted(map(type, e.exceptions), key=str)}",
                                        str(e))

            run()
    return seen, list(failures.values())
