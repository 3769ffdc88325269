import sys

from signalbox.cli import main

sys.exit(main())
