"""shardtui as a gateway proxy: bots of any library connect to it as they connect to Discord."""
