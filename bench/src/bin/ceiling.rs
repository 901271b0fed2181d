//! The HTTP ceiling: a minimal axum server that answers 202 to `POST /collector`
//! without reading the body. Run under the same load as The Eye, it shows what
//! the machine and the HTTP stack alone allow.

use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use clap::Parser;

#[derive(Debug, Parser)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8099")]
    listen: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let app = Router::new().route("/collector", post(|| async { StatusCode::ACCEPTED }));
    let listener = tokio::net::TcpListener::bind(&args.listen).await?;
    eprintln!("ceiling server on {}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
