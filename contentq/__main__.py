from contentq.cli.app import main

main()
