"""``python -m identity``."""

from identity.cli import main

main()
