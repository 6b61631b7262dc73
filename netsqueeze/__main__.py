import sys

from netsqueeze.cli.main import main

sys.exit(main())
