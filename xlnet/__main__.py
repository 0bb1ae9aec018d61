"""`python -m xlnet` is the `xlnet` command."""

import sys

from xlnet.commands.main import main

sys.exit(main())
