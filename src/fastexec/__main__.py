import sys

from fastexec.cli import main

sys.exit(main())
