//! A throwaway PostgreSQL server for benchmarks and manual runs (`bench/stores.sh`): starts one
//! (Debian's `postgresql`, as the tests do), creates database `gocoffee`, prints its connection
//! string, and stops and removes the server when its standard input closes.

use std::io::{Read, Write};

fn main() {
    let server = match gocoffee_sql::postgres::LocalServer::start() {
        Ok(server) => server,
        Err(why) => {
            eprintln!("pg-server: {why}");
            std::process::exit(1);
        }
    };
    let url = match server.database("gocoffee") {
        Ok(url) => url,
        Err(why) => {
            eprintln!("pg-server: creating the database: {why}");
            std::process::exit(1);
        }
    };
    println!("{url}");
    let _ = std::io::stdout().flush();
    // Held until whoever started us closes our input; then the server is stopped as it drops.
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
}
