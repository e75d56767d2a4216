from cirbench.cli import main

main()
