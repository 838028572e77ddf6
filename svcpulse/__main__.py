import sys

from svcpulse.cli import main

sys.exit(main())
