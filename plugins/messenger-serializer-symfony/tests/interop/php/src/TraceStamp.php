<?php

declare(strict_types=1);

namespace App\Stamp;

use Symfony\Component\Messenger\Stamp\StampInterface;

/** A stamp of the PHP application's own, which the Python side has never heard of. */
final class TraceStamp implements StampInterface
{
    private string $traceId;

    public function __construct(string $traceId)
    {
        $this->traceId = $traceId;
    }

    public function getTraceId(): string
    {
        return $this->traceId;
    }
}
