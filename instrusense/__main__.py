from instrusense.cli import main

raise SystemExit(main())
