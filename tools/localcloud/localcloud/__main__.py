"""python -m localcloud up|status|down|env|serve"""

from localcloud.cli import main

main()
