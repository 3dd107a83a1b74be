from lkr.cli import main

raise SystemExit(main())
