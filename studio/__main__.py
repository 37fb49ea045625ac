from dreammover_studio.cli import main

main()
