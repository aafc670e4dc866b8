from pinsync.cli import main

main()
