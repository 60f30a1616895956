"""The bids service: live auctions with exactly-once bids, scaled out through a consumer group."""
