import argparse
import json

from labcore.bench import BENCHES, run_bench


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m labcore.bench", description="run a labcore benchmark")
    ap.add_argument("name", choices=BENCHES)
    ap.add_argument("--out", default="build/bench", help="folder for NAME.json and NAME.html")
    ap.add_argument("--quick", action="store_true", help="small sizes (CI smoke check)")
    args = ap.parse_args()
    res = run_bench(args.name, args.out, quick=args.quick)
    print(json.dumps(res["summary"], indent=2))
    print("wrote", *res["paths"])


if __name__ == "__main__":
    main()
