"""`python -m regconsist_ros.cli` = `regconsist`."""
import sys

from regconsist_ros.cli import main

sys.exit(main())
