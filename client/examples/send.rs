//! Sends one event and a batch to a running The Eye.
//!
//! ```sh
//! cargo run --release &                      # The Eye, embedded
//! KEY=$(cargo run -q -- apps create --name backend | jq -r .key)
//! cargo run -p the-eye-client --example send -- http://127.0.0.1:8000 "$KEY"
//! ```

use std::time::Duration;

use the_eye_client::{Client, Event};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(base), Some(key)) = (args.next(), args.next()) else {
        eprintln!("usage: send BASE_URL SERVER_KEY");
        std::process::exit(2);
    };
    let client = Client::new(&base, &key)?;
    let event = Event::new("example-session", "form interaction", "submit")
        .with("host", "backend.example")
        .with("path", "/signup/")
        .with("form", serde_json::json!({"plan": "pro"}));
    let accepted = client.send(&[event]).await?;
    println!("accepted {} event(s): {:?}", accepted.accepted, accepted.ids);

    let batcher = client.batcher(100, Duration::from_millis(200));
    for i in 0..250 {
        let path = format!("/page/{i}");
        batcher
            .push(
                Event::new("example-session", "page interaction", "pageview")
                    .with("host", "backend.example")
                    .with("path", path),
            )
            .await?;
    }
    let stats = batcher.close().await?;
    println!("batcher: {} events in {} requests, {} failed", stats.events, stats.requests, stats.failed);
    Ok(())
}
