"""The `perfloop` command: each area adds its own sub-app."""

from __future__ import annotations

import typer

from perfloop.bench.cli import app as bench_app
from perfloop.engine.cli import app as engine_app
from perfloop.engine.server.cli import serve
from perfloop.eval.cli import app as eval_app
from perfloop.kernel.cli import app as kernel_app
from perfloop.ledger.cli import app as ledger_app
from perfloop.loop.cli import app as goal_app
from perfloop.loop.cli import report
from perfloop.profilers.cli import app as profile_app

app = typer.Typer(
    help="perfloop: fair benchmark -> gap -> profile -> patch -> revalidate, with a verified ledger.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(engine_app, name="engine")
app.command("serve")(serve)
app.add_typer(bench_app, name="bench")
app.add_typer(profile_app, name="profile")
app.add_typer(goal_app, name="goal")
app.add_typer(kernel_app, name="kernel")
app.add_typer(eval_app, name="eval")
app.add_typer(ledger_app, name="ledger")
app.command("report")(report)

if __name__ == "__main__":
    app()
