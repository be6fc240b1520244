from llamaswap.cli import main

raise SystemExit(main())
