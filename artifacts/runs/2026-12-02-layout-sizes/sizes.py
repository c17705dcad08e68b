"""Lines per file and per function (ast spans) of perfloop/ at a git revision: python sizes.py REV."""
import ast, subprocess, sys
rev = sys.argv[1]
files = subprocess.run(["git","ls-tree","-r","--name-only",rev,"perfloop"],capture_output=True,text=True).stdout.split()
sizes=[]; funcs=[]
for f in files:
    if not f.endswith(".py"): continue
    src = subprocess.run(["git","show",f"{rev}:{f}"],capture_output=True,text=True).stdout
    sizes.append((len(src.splitlines()), f))
    for n in ast.walk(ast.parse(src)):
        if isinstance(n,(ast.FunctionDef,ast.AsyncFunctionDef)):
            funcs.append((n.end_lineno-n.lineno+1, f"{f}:{n.name}"))
sizes.sort(reverse=True); funcs.sort(reverse=True)
print("files", len(sizes), "lines", sum(s for s,_ in sizes))
print("largest:", "; ".join(f"{f} {n}" for n,f in sizes[:6]))
print("longest:", "; ".join(f"{f} {n}" for n,f in funcs[:6]))
