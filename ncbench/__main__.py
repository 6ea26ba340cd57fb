from ncbench.cli import main

raise SystemExit(main())
