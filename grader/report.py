"""Rendering reports for people: the per-check table and the summary of several submissions."""
import shutil
import textwrap


def _value(value):
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _table(headers, rows):
    widths = [max(len(str(x)) for x in column) for column in zip(headers, *rows)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()
    return [line(headers), line("-" * w for w in widths)] + [line(r) for r in rows]


def render(report):
    """The terminal report of one submission."""
    width = max(60, min(shutil.get_terminal_size((110, 20)).columns, 140))
    out = [f"{report['title']}", f"submission: {report['submission']}  (assignment {report['assignment']}, "
           f"device {report['device']}, seed {report['seed']}, {report['durations']['total_s']:.1f} s)"]
    if report["error"]:
        out.append(f"error: {report['error']}")
    rows = [("PASS" if c["passed"] else "FAIL", c["name"], _value(c["value"]), c["threshold"] or "",
             f"{c['score']:g}/{c['max_score']:g}") for c in report["checks"]]
    table = _table(("", "check", "value", "threshold", "points"), rows)
    out += table[:2]
    for line, check in zip(table[2:], report["checks"]):
        out.append(line)
        if check["message"]:
            out += textwrap.wrap(check["message"], width - 6, initial_indent="      ", subsequent_indent="      ")
    if report["todos"]:
        out.append("unfinished TODOs: " + ", ".join(report["todos"]))
    verdict = "PASSED" if report["passed"] else "FAILED"
    out.append(f"{verdict}: {report['score']:g}/{report['max_score']:g} points")
    return "\n".join(out)


def one_line(report):
    verdict = "PASSED" if report["passed"] else "FAILED"
    reason = report["error"] or next((f"{c['name']}: {c['message']}" for c in report["checks"]
                                      if not c["passed"]), "")
    return f"{verdict} {report['submission']} ({report['assignment']}) {report['score']:g}/{report['max_score']:g}" + \
        (f" - {reason}" if reason else "")


def render_summary(reports):
    rows = []
    for r in reports:
        reason = r.get("error") or next((c["name"] for c in r["checks"] if not c["passed"]), "")
        rows.append((r["submission"], r["assignment"], f"{r['score']:g}/{r['max_score']:g}",
                     "passed" if r["passed"] else r.get("status", "failed"), reason[:60]))
    return "\n".join(_table(("submission", "assignment", "score", "result", "first problem"), rows))
