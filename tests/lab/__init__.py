"""The namespace scenario lab: homes (desk -> home router -> ISP -> platform) with a fault each."""
