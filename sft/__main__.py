from sft.cli import main

main()
