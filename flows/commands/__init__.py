"""One module per `vjepa` sub-command; each exposes `add_parser(subparsers)`.

A command module sets `handler=run` on its parser, where `run(args) -> int` is
the exit code. Heavy imports (torch, ray, prefect) happen inside `run` so that
`vjepa --help` stays fast.
"""
