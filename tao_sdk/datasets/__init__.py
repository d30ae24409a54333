"""Users' datasets: checking and converting them into the layouts the skills' data-source tables name."""
