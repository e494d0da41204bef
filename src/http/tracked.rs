//! The layer around every route: the request counted and timed by route and status
//! (`metrics`), checked by the gate (`gate`) and, on the bounded routes, let in within the
//! request bounds (`bounds`), in one tower service with a concrete future that boxes only
//! when the gate must wait on Bland or Redis.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::response::Response;
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::bounds::{self, Bounds};
use super::gate::{self, Verdict};
use super::metrics::{RequestMetrics, Route};
use super::Edge;

/// Given to every route (`route_layer`), with the bounds on the routes within them: one
/// layer, where three `from_fn` middlewares each boxed the next service and their own
/// future and took the request apart for their extractors, and where each layer of its own
/// would be another boxed route that axum clones, with all it wraps, on every call.
#[derive(Clone)]
pub struct Track {
    pub edge: Arc<Edge>,
    pub bounds: Option<Arc<Bounds>>,
}

impl<S> Layer<S> for Track {
    type Service = Tracked<S>;

    fn layer(&self, inner: S) -> Tracked<S> {
        Tracked {
            inner,
            edge: self.edge.clone(),
            bounds: self.bounds.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Tracked<S> {
    inner: S,
    edge: Arc<Edge>,
    bounds: Option<Arc<Bounds>>,
}

impl<S> Service<Request> for Tracked<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Tracking<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        let started = Instant::now();
        let route = RequestMetrics::route(Some(
            request
                .extensions()
                .get::<MatchedPath>()
                .map_or("other", MatchedPath::as_str),
        ));
        let answer = match gate::verdict(&self.edge, &request) {
            Verdict::Pass(presented) => {
                if let Some(p) = presented {
                    request.extensions_mut().insert(p);
                }
                match self.bounds.as_ref().map(|b| b.admit(&mut request)) {
                    None => Answer::Route {
                        future: self.inner.call(request),
                    },
                    Some(Ok(admission)) => Answer::Bounded {
                        future: admission.run(self.inner.call(request)),
                    },
                    Some(Err(refusal)) => Answer::Ready {
                        response: Some(*refusal),
                    },
                }
            }
            Verdict::Refused(response) => Answer::Ready {
                response: Some(response),
            },
            Verdict::Ask {
                presented,
                scope,
                reply,
                peer,
            } => {
                // tower's usual move: the service that was polled ready answers, after the wait;
                // its clone stays for the next request.
                let ready = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, ready);
                let edge = self.edge.clone();
                let bounds = self.bounds.clone();
                Answer::Asking {
                    future: Box::pin(async move {
                        if let Err(e) = gate::ask(&edge, &presented, scope, peer).await {
                            return gate::refused(reply, &e);
                        }
                        request.extensions_mut().insert(presented);
                        let answer = match bounds.map(|b| b.admit(&mut request)) {
                            None => inner.call(request).await,
                            Some(Ok(admission)) => admission.run(inner.call(request)).await,
                            Some(Err(refusal)) => return *refusal,
                        };
                        match answer {
                            Ok(response) => response,
                            Err(never) => match never {},
                        }
                    }),
                }
            }
        };
        Tracking {
            answer,
            edge: self.edge.clone(),
            route,
            started,
        }
    }
}

pin_project! {
    /// A routed request's answer, counted when it is ready.
    pub struct Tracking<F> {
        #[pin]
        answer: Answer<F>,
        edge: Arc<Edge>,
        route: Route,
        started: Instant,
    }
}

pin_project! {
    #[project = AnswerProj]
    enum Answer<F> {
        /// Refused by the gate.
        Ready { response: Option<Response> },
        /// The route's own answer.
        Route { #[pin] future: F },
        /// The route's own answer, within the bounds.
        Bounded { #[pin] future: bounds::Bounded<F> },
        /// The gate's wait, then the route's answer.
        Asking { future: Pin<Box<dyn Future<Output = Response> + Send>> },
    }
}

impl<F> Future for Tracking<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = match this.answer.project() {
            AnswerProj::Ready { response } => response
                .take()
                .expect("a route's future polled after it was ready"),
            AnswerProj::Route { future } => match ready!(future.poll(cx)) {
                Ok(response) => response,
                Err(never) => match never {},
            },
            AnswerProj::Bounded { future } => match ready!(future.poll(cx)) {
                Ok(response) => response,
                Err(never) => match never {},
            },
            AnswerProj::Asking { future } => ready!(future.as_mut().poll(cx)),
        };
        this.edge
            .requests
            .record_route(*this.route, response.status().as_u16(), *this.started);
        Poll::Ready(Ok(response))
    }
}
