"""`python -m pcc ...` is the `pcc` command (what torchrun runs: `torchrun ... -m pcc train ...`)."""
import sys

from .cli.main import main

sys.exit(main())
