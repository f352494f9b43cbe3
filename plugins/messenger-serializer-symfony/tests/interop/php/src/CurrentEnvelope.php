<?php

declare(strict_types=1);

namespace App\Interop;

use Symfony\Component\Messenger\Envelope;
use Symfony\Component\Messenger\Middleware\MiddlewareInterface;
use Symfony\Component\Messenger\Middleware\StackInterface;

/**
 * Keeps the envelope being handled, so that the handler can record its stamps (a Symfony
 * handler only gets the message).
 */
final class CurrentEnvelope implements MiddlewareInterface
{
    public static ?Envelope $envelope = null;

    public function handle(Envelope $envelope, StackInterface $stack): Envelope
    {
        self::$envelope = $envelope;
        try {
            return $stack->next()->handle($envelope, $stack);
        } finally {
            self::$envelope = null;
        }
    }
}
