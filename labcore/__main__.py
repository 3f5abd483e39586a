"""`python -m labcore course run --profile P --out build/` and `python -m labcore nb sync`."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m labcore")
    sub = ap.add_subparsers(dest="cmd", required=True)
    course = sub.add_parser("course", help="run the chapter notebooks")
    csub = course.add_subparsers(dest="action", required=True)
    run = csub.add_parser("run", help="execute notebooks into OUT (ipynb + html + summary.md)")
    run.add_argument("--profile", default="auto", help="smoke | cpu | gpu | auto (default)")
    run.add_argument("--out", default="build", help="output folder (default: build)")
    run.add_argument("--only", default=None, help="comma-separated chapter prefixes, e.g. 01,02")
    run.add_argument("--no-html", action="store_true", help="skip the HTML export")
    run.add_argument("--timeout", type=float, default=None,
                     help="seconds before a chapter is stopped (default: twice the profile's budget, >= 300)")
    csub.add_parser("list", help="list the chapters")
    stu = csub.add_parser("student", help="write student notebooks (solutions removed) into OUT")
    stu.add_argument("--out", default="build/student", help="output folder (default: build/student)")
    stu.add_argument("--only", default=None, help="comma-separated chapter prefixes, e.g. 01,02")
    nb = sub.add_parser("nb", help="notebook upkeep (jupytext pairs, stripping)")
    nsub = nb.add_subparsers(dest="action", required=True)
    sync = nsub.add_parser("sync", help="rebuild .ipynb from the paired .py, refresh checked outputs, strip")
    sync.add_argument("stems", nargs="*", help="notebook stems (default: all)")
    nsub.add_parser("check", help="fail if a notebook is unstripped or out of sync with its .py")
    args = ap.parse_args(argv)

    if args.cmd == "course":
        from labcore import course as c

        if args.action == "list":
            for ch in c.CHAPTERS:
                print(f"{ch.stem}\t{ch.title}")
            return 0
        if args.action == "student":
            from labcore import student

            for row in student.build(args.out, args.only):
                print(f"[student] {row['path']}: {row['exercises']} checked exercises, "
                      f"{row['solutions_removed']} solution cells removed")
            return 0
        results = c.run_course(args.profile, args.out, args.only, html=not args.no_html,
                               timeout=args.timeout)
        print(f"[course] summary: {args.out}/summary.md")
        return 0 if all(r["ok"] for r in results) else 1
    from labcore import notebooks as n

    if args.action == "sync":
        n.sync(args.stems or None)
        return 0
    problems = n.check()
    for p in problems:
        print(p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
