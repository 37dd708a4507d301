from shardtui.cli import main

raise SystemExit(main())
