#!/usr/bin/env python3
"""Run the scim2-tester compliance suite against a live SCIM server.

Usage:
    python .ci/scim2_tester_run.py --url http://127.0.0.1:PORT/scim/v2 --token TOKEN \
        [--skip CHECK ...] [--resource-type User --resource-type Group] \
        [--wait SECONDS] [--timeout SECONDS] [--report FILE.json] [--verbose]

Install (pinned, tested together):
    pip install "scim2-tester[httpx2]==0.5.2" "scim2-client==0.13.2" "scim2-models==0.12.3" "httpx2==2.16.2"

What runs: everything scim2_tester.check_server() runs, limited to the User and
Group resource types:
  * discovery: GET /ServiceProviderConfig, /ResourceTypes, /ResourceTypes/{id},
    /Schemas, /Schemas/{id}, 404 for unknown ResourceType/Schema ids, 405 for
    POST/PUT/PATCH/DELETE on the three discovery endpoints;
  * misc: GET on a random URL must answer a SCIM Error with status 404;
  * per resource type (models are built from what /Schemas and /ResourceTypes
    publish, so only the attributes the server declares are exercised):
    POST create, GET by id, GET list, GET with attributes / excludedAttributes
    (by id and list), POST /.search (root, all types; a 501 makes it SKIPPED),
    PUT replace, DELETE then GET -> 404, and PATCH add / remove / replace on
    every writable attribute (one result per attribute path).

Each result is printed on its own line as
    STATUS  NAME  reason
where NAME is [ResourceType.]check_function[detail], e.g.
    PASS  User.check_replace_attribute[emails]  Successfully replaced ...
Any NAME prefix form can be passed to --skip:
    --skip check_remove_attribute              (not run at all, every resource type)
    --skip Group.check_replace_attribute       (not run for Group only)
    --skip User.check_add_attribute[x509Certificates]
                                               (runs, but that result is counted skipped)
--skip takes one or more names and can be repeated.  Skipping
service_provider_config_endpoint, query_all_resource_types or query_all_schemas
stops every resource check, since they are what describes the server.

The last line is exactly
    scim2-tester: N passed, M failed[, K skipped]
and the exit status is 0 only when M == 0 (2 for a usage or internal error).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from typing import Any

try:
    import httpx2
    from scim2_client.engines.httpx2 import SyncSCIMClient
    from scim2_tester import CheckResult
    from scim2_tester import Status
    from scim2_tester import check_server
except ImportError as exc:  # pragma: no cover - environment problem
    print(f"scim2_tester_run: cannot import the suite: {exc}", file=sys.stderr)
    print(
        'install it with: pip install "scim2-tester[httpx2]==0.5.2" '
        '"scim2-client==0.13.2" "scim2-models==0.12.3" "httpx2==2.16.2"',
        file=sys.stderr,
    )
    print("scim2-tester: 0 passed, 1 failed")
    sys.exit(2)

PASSING = {Status.SUCCESS, Status.COMPLIANT, Status.ACCEPTABLE}
# DEVIATION is "SHOULD not followed but within the spec": reported, not failed.
WARNING = {Status.DEVIATION}
FAILING = {Status.ERROR, Status.CRITICAL}

# Checks that describe the server; skipping them stops every resource check.
PREREQUISITES = {
    "service_provider_config_endpoint",
    "query_all_resource_types",
    "query_all_schemas",
}

_current_resource_type: str | None = None


# --------------------------------------------------------------------------
# --skip handling
# --------------------------------------------------------------------------


class SkipSpec:
    """One --skip value: [RESOURCE.]CHECK[[DETAIL]]."""

    def __init__(self, raw: str):
        self.raw = raw
        rest = raw
        self.detail: str | None = None
        if rest.endswith("]") and "[" in rest:
            rest, _, detail = rest.partition("[")
            self.detail = detail[:-1]
        self.resource_type: str | None = None
        if "." in rest:
            self.resource_type, _, rest = rest.partition(".")
        self.check = rest

    def matches(self, resource_type: str | None, check: str, detail: str | None) -> bool:
        if self.check != check:
            return False
        if self.resource_type is not None and self.resource_type != resource_type:
            return False
        if self.detail is not None and self.detail != detail:
            return False
        return True


def known_checks() -> list[str]:
    import scim2_tester.checkers as checkers

    return sorted(n for n in checkers.__all__ if n != "resource_type_tests")


def install_skips(specs: list[SkipSpec]) -> None:
    """Replace whole skipped check functions so they are not run at all.

    scim2-tester calls its checks through module globals, so swapping the name
    in every scim2_tester module is enough. Specs with a [detail] are applied
    after the run instead (the check runs, the matching result is ignored).
    """
    import scim2_tester.checker as checker_module

    whole = [s for s in specs if s.detail is None]
    modules = [
        m
        for name, m in list(sys.modules.items())
        if m is not None and (name == "scim2_tester" or name.startswith("scim2_tester."))
    ]

    # Track which resource type is being checked, for RESOURCE.CHECK specs.
    original_rtt = checker_module.resource_type_tests

    def resource_type_tests(context: Any, resource_type: Any) -> list[CheckResult]:
        global _current_resource_type
        _current_resource_type = resource_type.name
        try:
            return original_rtt(context, resource_type)
        finally:
            _current_resource_type = None

    checker_module.resource_type_tests = resource_type_tests

    for check in {s.check for s in whole}:
        rts = {s.resource_type for s in whole if s.check == check}
        originals = {
            id(getattr(m, check)): getattr(m, check)
            for m in modules
            if callable(getattr(m, check, None))
        }
        if not originals:
            continue

        def make_stub(orig: Any, check: str = check, rts: set = rts) -> Any:
            def stub(context: Any, *args: Any, **kwargs: Any) -> list[CheckResult]:
                if None in rts or _current_resource_type in rts:
                    return [
                        CheckResult(
                            status=Status.SKIPPED,
                            title=check,
                            reason="skipped by --skip",
                            tags=set(getattr(orig, "tags", set())),
                        )
                    ]
                return orig(context, *args, **kwargs)

            return stub

        stubs = {key: make_stub(orig) for key, orig in originals.items()}
        for m in modules:
            fn = getattr(m, check, None)
            if callable(fn) and id(fn) in stubs:
                setattr(m, check, stubs[id(fn)])


# --------------------------------------------------------------------------
# Naming results
# --------------------------------------------------------------------------


def _detail(r: CheckResult) -> str | None:
    title = r.title or ""
    data = r.data
    reason = r.reason or ""
    if isinstance(data, dict) and "urn" in data:
        return str(data["urn"])
    if title.endswith("_endpoint_methods") and reason:
        return reason.split(" ", 1)[0]
    if title in ("query_resource_type_by_id", "access_schema_by_id"):
        ident = getattr(data, "id", None)
        if ident:
            return str(ident)
        if reason.startswith("Failed to access schema "):
            return reason[len("Failed to access schema ") :].split(":", 1)[0]
    if title == "resource_types_schema_validation" and "'" in reason:
        return reason.split("'")[1]
    return None


ATTRIBUTE_CHECKS = ("object_query_with_attributes", "object_list_with_attributes", "search_with_attributes")


def name_results(results: list[CheckResult]) -> list[tuple[str, str | None, str | None, CheckResult]]:
    """Give every result a stable printable name: [RT.]title[detail]."""
    named = []
    seen: dict[tuple, int] = {}
    attr_seen: dict[tuple, int] = {}
    for r in results:
        detail = _detail(r)
        if r.title in ATTRIBUTE_CHECKS and r.status != Status.SKIPPED:
            # These checks yield an `attributes=` result, then an
            # `excludedAttributes=` one, from the same (resource, check) call.
            k = (r.resource_type, r.title)
            attr_seen[k] = attr_seen.get(k, 0) + 1
            detail = {1: "attributes", 2: "excludedAttributes"}.get(attr_seen[k])
        key = (r.resource_type, r.title, detail)
        seen[key] = seen.get(key, 0) + 1
        named.append([r, detail, seen[key]])

    counts = dict(seen)
    out = []
    for r, detail, idx in named:
        key = (r.resource_type, r.title, detail)
        if counts[key] > 1:
            # Several results with nothing telling them apart: number them.
            detail = f"{detail}#{idx}" if detail else f"#{idx}"
        name = (r.title or "unnamed_check")
        if r.resource_type:
            name = f"{r.resource_type}.{name}"
        if detail:
            name = f"{name}[{detail}]"
        out.append((name, detail, r.resource_type, r))
    return out


def _one_line(text: str | None, limit: int = 300) -> str:
    if not text:
        return ""
    text = " | ".join(line.strip() for line in str(text).splitlines() if line.strip())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_jsonable(v) for v in value]
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        try:
            return dump(mode="json")
        except Exception:
            pass
    return repr(value)


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------


def wait_for_server(client: "httpx2.Client", seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while True:
        try:
            client.get("ServiceProviderConfig")
            return True
        except httpx2.TransportError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Run scim2-tester against a SCIM server (Users, Groups, discovery)."
    )
    parser.add_argument("--url", required=False, help="SCIM base URL, e.g. http://127.0.0.1:8080/scim/v2")
    parser.add_argument("--token", default=None, help="bearer token sent as 'Authorization: Bearer TOKEN'")
    parser.add_argument(
        "--skip",
        action="extend",
        nargs="+",
        default=[],
        metavar="CHECK",
        help="[RESOURCE.]CHECK[[DETAIL]] to skip; repeatable, several per flag",
    )
    parser.add_argument(
        "--resource-type",
        action="append",
        dest="resource_types",
        metavar="NAME",
        help="resource types to check (default: User and Group); each must be published by the server",
    )
    parser.add_argument("--timeout", type=float, default=30.0, help="per-request timeout in seconds (default 30)")
    parser.add_argument(
        "--wait",
        type=float,
        default=10.0,
        help="seconds to wait for the server to accept connections before starting (default 10)",
    )
    parser.add_argument("--report", metavar="FILE", help="write every result as JSON to FILE")
    parser.add_argument("--verbose", "-v", action="store_true", help="print the debugging data of failures")
    parser.add_argument("--list-checks", action="store_true", help="print the check function names and exit")
    args = parser.parse_args(argv)

    if args.list_checks:
        for name in known_checks():
            print(name)
        return 0
    if not args.url:
        parser.error("--url is required")

    resource_types = args.resource_types or ["User", "Group"]
    specs = [SkipSpec(s) for s in args.skip]
    known = set(known_checks())
    for s in specs:
        if s.check not in known:
            print(f"warning: --skip {s.raw}: no check named {s.check!r} (see --list-checks)", file=sys.stderr)
        elif s.check in PREREQUISITES and s.detail is None:
            print(f"warning: --skip {s.raw}: this check describes the server; resource checks will not run", file=sys.stderr)
    install_skips(specs)

    base_url = args.url.rstrip("/") + "/"
    headers = {"Accept": "application/scim+json"}
    if args.token:
        headers["Authorization"] = f"Bearer {args.token}"
    http = httpx2.Client(
        base_url=base_url,
        headers=headers,
        timeout=args.timeout,
        trust_env=False,  # never send loopback traffic through an environment proxy
    )

    try:
        from importlib.metadata import version

        tester_version = version("scim2-tester")
    except Exception:
        tester_version = "?"
    print(f"scim2-tester {tester_version} against {base_url} (resource types: {', '.join(resource_types)})")
    started = time.monotonic()

    if not wait_for_server(http, args.wait):
        print(f"FAIL  connect  could not connect to {base_url} within {args.wait:g}s")
        print("scim2-tester: 0 passed, 1 failed")
        return 1

    scim = SyncSCIMClient(http)
    try:
        results = check_server(scim, resource_types=resource_types)
    except Exception as exc:  # the suite itself crashed
        traceback.print_exc()
        print(f"FAIL  check_server  internal error in scim2-tester: {_one_line(str(exc))}")
        print("scim2-tester: 0 passed, 1 failed")
        return 2

    named = name_results(results)

    # A resource type for which nothing ran is a failure, not a silent pass:
    # it happens when discovery fails or the type is not published.
    for rt in resource_types:
        if not any(r.resource_type == rt for r in results):
            synthetic = CheckResult(
                status=Status.ERROR,
                title="resource_type_checked",
                reason=f"no check ran for {rt}: not published by /ResourceTypes + /Schemas, "
                f"or discovery failed (see above)",
                resource_type=rt,
            )
            named.append((f"{rt}.resource_type_checked", None, rt, synthetic))

    passed = failed = skipped = warned = 0
    report = []
    for name, detail, rt, r in named:
        status = r.status
        label = None
        if status not in (Status.SKIPPED,) and any(
            s.detail is not None and s.matches(rt, r.title or "", detail) for s in specs
        ):
            label, reason = "SKIP", f"ignored by --skip (was {status.name}): {r.reason or ''}"
            skipped += 1
        elif status in PASSING:
            label, reason = "PASS", r.reason
            passed += 1
        elif status in WARNING:
            label, reason = "WARN", r.reason
            passed += 1
            warned += 1
        elif status == Status.SKIPPED:
            label, reason = "SKIP", r.reason
            skipped += 1
        else:
            label, reason = "FAIL", f"[{status.name}] {r.reason or ''}"
            failed += 1
        print(f"{label}  {name}  {_one_line(reason)}")
        if args.verbose and label == "FAIL" and r.data is not None:
            print(f"      data: {_one_line(json.dumps(_jsonable(r.data), default=repr), 2000)}")
        report.append(
            {
                "name": name,
                "resource_type": rt,
                "check": r.title,
                "detail": detail,
                "status": status.name,
                "outcome": label,
                "reason": r.reason,
                "data": _jsonable(r.data),
            }
        )

    elapsed = time.monotonic() - started
    if args.report:
        with open(args.report, "w") as f:
            json.dump({"url": base_url, "elapsed_seconds": elapsed, "results": report}, f, indent=2, default=repr)

    note = f" ({warned} with SHOULD-level deviations)" if warned else ""
    print(f"ran {len(named)} results in {elapsed:.1f}s{note}")
    line = f"scim2-tester: {passed} passed, {failed} failed"
    if skipped:
        line += f", {skipped} skipped"
    print(line)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
