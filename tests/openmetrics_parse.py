"""Parses an OpenMetrics text exposition (stdin) with the Prometheus project's own Python
parser, which refuses anything the format does not allow, and prints its samples as JSON
(tests/metrics.rs reads them). Exit status 1 with the parser's message on invalid input."""

import json
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families


def main() -> int:
    text = sys.stdin.read()
    try:
        families = list(text_string_to_metric_families(text))
    except ValueError as e:
        print(f"invalid OpenMetrics text: {e}", file=sys.stderr)
        return 1
    out = []
    for family in families:
        out.append(
            {
                "name": family.name,
                "type": family.type,
                "unit": family.unit,
                "samples": [
                    # repr keeps NaN and infinities, which JSON has no number for.
                    {"name": s.name, "labels": s.labels, "value": repr(float(s.value))}
                    for s in family.samples
                ],
            }
        )
    json.dump(out, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
