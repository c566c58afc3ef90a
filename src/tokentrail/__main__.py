"""``python -m tokentrail``: the command line."""

from tokentrail.cli import main

main()
