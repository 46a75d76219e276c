"""Flow: where a stored post goes next and when — the follow-ups of each move (pipeline), the route rules that pick
posts (rules), the publishing slots (schedule), the hand-over to the publish queue (dispatch), and the channels
registry the routes read from and post to (channels)."""
