import sys

from dqnviz.cli import main

sys.exit(main())
