"""One served version of a CustomResourceDefinition as the JSON Schema the deploy tests use.

    git show 1.2.0:packaging/install/cluster-operator/043-Crd-kafkatopic.yaml \
        | python deploy/schemas/extract.py v1 "strimzi/strimzi-kafka-operator 1.2.0 ..." \
        > deploy/schemas/kafkatopic.schema.json

The version's `openAPIV3Schema` is kept as the CRD has it, with these changes (see README.md):
descriptions are dropped (most of the size, no constraint); `apiVersion` and `kind` are pinned
to this group/version and kind; every object the CRD lists `properties` for refuses other
fields, as `kubectl apply --validate=strict` (server-side field validation) does, where the API
server would otherwise drop them silently (objects that keep unknown fields,
`x-kubernetes-preserve-unknown-fields`, or declare `additionalProperties` stay open); and a
Go regular expression Python reads differently is rewritten to mean the same.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

import yaml

# Reached through these keys, a schema is a value's own schema. Inside anyOf/allOf/oneOf/not
# it only adds checks to another's (a structural schema's rule), so it stays open there.
_NESTED = ("items", "additionalProperties")


def strict(node: Any, closed: bool = True) -> Any:
    """The schema without descriptions; where `closed`, objects with `properties` refuse
    other fields."""
    if isinstance(node, list):
        return [strict(item, closed=False) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "description":
            continue
        if key == "pattern":
            out[key] = _python_pattern(value)
        elif key == "properties":
            out[key] = {name: strict(sub, closed) for name, sub in value.items()}
        elif key in _NESTED:
            out[key] = strict(value, closed)
        else:
            out[key] = strict(value, closed=False)
    if (
        closed
        and "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def _python_pattern(pattern: str) -> str:
    """The same regular expression for Python: Go (the API server's) accepts inline flags
    anywhere, Python only at the start, so `^(?i)x` becomes `(?i)^x`."""
    moved = re.sub(r"^\^\(\?([a-zA-Z]+)\)", r"(?\1)^", pattern)
    re.compile(moved)
    return moved


def extract(crd: dict[str, Any], version: str, source: str) -> dict[str, Any]:
    spec = crd["spec"]
    (served,) = [v for v in spec["versions"] if v["name"] == version]
    if not served.get("served", False):
        raise SystemExit(f"{spec['names']['kind']} {version} is not served by this CRD")
    schema = strict(served["schema"]["openAPIV3Schema"])
    api_version = f"{spec['group']}/{version}"
    kind = spec["names"]["kind"]
    schema["properties"]["apiVersion"] = {"const": api_version}
    schema["properties"]["kind"] = {"const": kind}
    schema["required"] = sorted({"apiVersion", "kind", "metadata", *schema.get("required", [])})
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "$comment": f"{kind} {api_version} from {source}; made by deploy/schemas/extract.py",
        **schema,
    }


def main() -> None:
    version, source = sys.argv[1], sys.argv[2]
    crd = yaml.safe_load(sys.stdin)
    json.dump(extract(crd, version, source), sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
