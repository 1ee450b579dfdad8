//! One module per subcommand.

pub mod train;
