"""``python -m billing_oss``: the ``billing-oss`` command."""

from billing_oss.server.cli import main

raise SystemExit(main())
