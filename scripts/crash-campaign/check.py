# Checks that the Parquet files in WORK/out are the complete set of one succeeded run.
# Usage: check.py WORK  (prints "ok …" or "BAD …": files on disk, succeeded runs, temp files)
import sqlite3, json, hashlib, os, sys, glob
work = sys.argv[1]
db = sqlite3.connect(os.path.join(work, "state/lineage.db"))
sets = {}
for run_id, status, rec in db.execute("select run_id, status, record_json from runs order by seq"):
    r = json.loads(rec)
    if status != "succeeded":
        continue
    files = {os.path.realpath(o["path"]): o["sha256"] for o in r["outputs"]}
    files.update({os.path.realpath(x["path"]): x["sha256"] for x in r.get("releases", [])})
    sets[run_id] = files
on_disk = {}
for p in glob.glob(os.path.join(work, "out/*.parquet")):
    on_disk[os.path.realpath(p)] = hashlib.sha256(open(p, "rb").read()).hexdigest()
tmp = [p for p in os.listdir(os.path.join(work, "out")) if ".privprep-tmp-" in p] if os.path.isdir(os.path.join(work, "out")) else []
ok = (not on_disk) or any(f == on_disk for f in sets.values())
print("ok" if ok and not tmp else "BAD", len(on_disk), len(sets), len(tmp))
