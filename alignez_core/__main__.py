import sys

from alignez_core.cli import main

sys.exit(main())
