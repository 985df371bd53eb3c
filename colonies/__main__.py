from colonies.cli.main import main

main()
